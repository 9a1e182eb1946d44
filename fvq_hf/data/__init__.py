"""Data: image files and their modes (`image_io`), training and evaluation image sets (`sources`), and the
token-id files a prior trains on (`tokens`) and the latents a latent generator trains on (`latents`)."""
