(define (problem miconic-4-0) (:domain miconic)
(:objects p0 p1 p2 p3 - passenger f00 f01 f02 f03 f04 f05 f06 f07 - floor)
(:init (above f00 f01) (above f00 f02) (above f00 f03) (above f00 f04) (above f00 f05) (above f00 f06) (above f00 f07) (above f01 f02) (above f01 f03) (above f01 f04) (above f01 f05) (above f01 f06) (above f01 f07) (above f02 f03) (above f02 f04) (above f02 f05) (above f02 f06) (above f02 f07) (above f03 f04) (above f03 f05) (above f03 f06) (above f03 f07) (above f04 f05) (above f04 f06) (above f04 f07) (above f05 f06) (above f05 f07) (above f06 f07) (origin p0 f06) (origin p1 f06) (origin p2 f04) (origin p3 f07) (destin p0 f07) (destin p1 f00) (destin p2 f07) (destin p3 f03) (lift-at f00))
(:goal (and (served p0) (served p1) (served p2) (served p3))))
