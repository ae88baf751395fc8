"""Web routes and pages. `auth.py`: sign-in, the SMART authorization server and discovery."""
