"""``stigmer``, the command line of the Stigmer execution plane."""
