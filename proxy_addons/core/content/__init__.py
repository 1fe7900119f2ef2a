"""Page content: risk phrases, weighted scoring and the scan's piece memory."""
