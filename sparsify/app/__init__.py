"""The application: the ``sparsify`` command (``cli``), ``compare`` with its launchers and report,
the run summary, Weights & Biases tracking and the ``export`` command. Built on the core
(``sparsify``) and the Lightning side (``sparsify.lightning``, ``sparsify.callbacks``,
``sparsify.datamodules``); nothing below imports it."""
