"""Training a classifier and telling the user how far to trust it.

* :mod:`.head`: frozen backbone + trained head on cached features (Ikemoto et al. 2022's mode),
  cross-validation;
* :mod:`.spread_design`: the head's design chosen leave-one-spread-out on a lab's own crops;
* :mod:`.corrections`: retraining after calls corrected by hand (the correction loop);
* :mod:`.checks`: warnings a trained model's numbers support.
"""
