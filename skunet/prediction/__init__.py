"""Prediction: images -> tiles -> network -> blended probabilities in memory
(:mod:`.inference`), block by block for images larger than memory (:mod:`.blocks`), and
their instances across blocks (:mod:`.block_instances`, with the first passes kept for a
resumed run in :mod:`.instance_stash`). :class:`skunet.predictor.Predictor` is the
public face of this stage."""
