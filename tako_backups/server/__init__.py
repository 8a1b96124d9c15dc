"""tako-server: signed management API, scheduler, app runtime."""
