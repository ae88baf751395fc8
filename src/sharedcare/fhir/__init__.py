"""FHIR R4 (4.0.1) knowledge and the REST API."""
