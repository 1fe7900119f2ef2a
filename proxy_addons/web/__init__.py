"""The admin web app for staff."""
