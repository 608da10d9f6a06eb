(define (problem blocks-8-2) (:domain BLOCKS)
(:objects x1 x2 x3 x4 x5 x6 x7 x8 - block)
(:init (handempty) (ontable x1) (on x2 x4) (ontable x3) (on x4 x6) (ontable x5) (ontable x6) (ontable x7) (ontable x8) (clear x2) (clear x5) (clear x3) (clear x7) (clear x8) (clear x1))
(:goal (and (ontable x1) (ontable x2) (on x3 x8) (on x4 x7) (on x5 x4) (on x6 x1) (on x7 x3) (on x8 x2))))
