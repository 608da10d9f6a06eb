(define (problem blocks-7-1) (:domain BLOCKS)
(:objects x1 x2 x3 x4 x5 x6 x7 - block)
(:init (handempty) (on x1 x4) (on x2 x1) (ontable x3) (ontable x4) (ontable x5) (on x6 x7) (ontable x7) (clear x2) (clear x6) (clear x3) (clear x5))
(:goal (and (ontable x1) (ontable x2) (on x3 x1) (ontable x4) (on x5 x7) (ontable x6) (ontable x7))))
