"""Training helpers: the photo recipe (a training set from photos) and scoring a training set."""
