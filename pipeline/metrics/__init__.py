"""Distribution metrics between a synthetic and a real image set: FD, KID, precision/recall, density/coverage."""
