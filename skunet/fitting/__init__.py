"""Training: the estimator's ``fit`` / ``partial_fit`` side (:mod:`.training`: data,
schedule, callbacks, a non-finite loss) and the learning-rate range test
(:mod:`.lr_finder`)."""
