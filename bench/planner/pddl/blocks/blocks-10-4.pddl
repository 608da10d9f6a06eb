(define (problem blocks-10-4) (:domain BLOCKS)
(:objects x1 x10 x2 x3 x4 x5 x6 x7 x8 x9 - block)
(:init (handempty) (ontable x1) (on x10 x3) (on x2 x10) (on x3 x9) (ontable x4) (ontable x5) (ontable x6) (on x7 x8) (ontable x8) (ontable x9) (clear x2) (clear x1) (clear x7) (clear x6) (clear x5) (clear x4))
(:goal (and (on x1 x2) (on x10 x9) (ontable x2) (ontable x3) (on x4 x8) (on x5 x4) (on x6 x1) (on x7 x6) (on x8 x7) (ontable x9))))
