"""Networks the families build: the 2014 MLPs, DCGAN, the InfoGAN networks, conditioning."""
