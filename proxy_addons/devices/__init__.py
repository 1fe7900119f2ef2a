"""School devices: enrolment, reports, identity, and watching the network for devices."""
