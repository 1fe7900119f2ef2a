"""Running an installation: doctor, backups, the school CA, workers, list updates, status."""
