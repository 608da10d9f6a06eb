(define (problem gripper-6) (:domain gripper-strips)
(:objects rooma roomb left right b1 b2 b3 b4 b5 b6)
(:init (room rooma) (room roomb) (gripper left) (gripper right) (at-robby rooma) (free left) (free right) (ball b1) (at b1 rooma) (ball b2) (at b2 rooma) (ball b3) (at b3 rooma) (ball b4) (at b4 rooma) (ball b5) (at b5 rooma) (ball b6) (at b6 rooma))
(:goal (and (at b1 roomb) (at b2 roomb) (at b3 roomb) (at b4 roomb) (at b5 roomb) (at b6 roomb))))
