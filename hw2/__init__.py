"""hw2, Part 4: convolutional and residual networks."""
