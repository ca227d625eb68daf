"""The admin dashboard: static files served at ``/`` and their JSON calls (:mod:`.api`)."""
