(define (problem logistics-6-1) (:domain logistics)
(:objects a0 - airplane c0l0 c1l0 - airport c0l1 c1l1 - location c0 c1 - city t0 t1 - truck q0 q1 q2 q3 q4 q5 - package)
(:init (in-city c0l0 c0) (in-city c0l1 c0) (in-city c1l0 c1) (in-city c1l1 c1) (at t0 c0l0) (at t1 c1l0) (at a0 c1l0) (at q0 c0l0) (at q1 c1l1) (at q2 c1l1) (at q3 c1l1) (at q4 c1l1) (at q5 c0l1))
(:goal (and (at q0 c0l1) (at q1 c0l1) (at q2 c0l0) (at q3 c0l1) (at q4 c0l1) (at q5 c1l1))))
