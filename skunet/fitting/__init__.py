"""Training: the estimator's ``fit`` / ``partial_fit`` side (:mod:`.training`: data,
schedule, callbacks, a non-finite loss), its training set (:mod:`.training_set`, where
images in memory and images larger than memory part ways) and the learning-rate range
test (:mod:`.lr_finder`)."""
