"""Data in: images and masks checked before anything else runs (:mod:`.validation`), and
the random training windows cut from them (:mod:`.sampling`)."""
