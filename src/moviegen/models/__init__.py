"""Models of the cast: the temporal autoencoder, the video transformer and the text encoders."""
