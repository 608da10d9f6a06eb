(define (problem blocks-6-0) (:domain BLOCKS)
(:objects x1 x2 x3 x4 x5 x6 - block)
(:init (handempty) (on x1 x3) (ontable x2) (on x3 x5) (on x4 x1) (ontable x5) (on x6 x2) (clear x4) (clear x6))
(:goal (and (ontable x1) (ontable x2) (on x3 x6) (ontable x4) (on x5 x4) (ontable x6))))
