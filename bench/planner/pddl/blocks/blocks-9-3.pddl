(define (problem blocks-9-3) (:domain BLOCKS)
(:objects x1 x2 x3 x4 x5 x6 x7 x8 x9 - block)
(:init (handempty) (on x1 x6) (ontable x2) (ontable x3) (on x4 x3) (on x5 x7) (ontable x6) (on x7 x2) (on x8 x5) (on x9 x1) (clear x8) (clear x9) (clear x4))
(:goal (and (on x1 x9) (on x2 x6) (ontable x3) (ontable x4) (on x5 x7) (ontable x6) (on x7 x4) (ontable x8) (on x9 x3))))
