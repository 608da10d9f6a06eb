; The Sussman anomaly: C on A, B on the table; goal A on B on C (optimal: 6 steps).
(define (problem SUSSMAN)
  (:domain BLOCKS)
  (:objects A B C)
  (:INIT (CLEAR C) (CLEAR B) (ON C A) (ONTABLE A) (ONTABLE B) (HANDEMPTY))
  (:goal (AND (ON A B) (ON B C))))
