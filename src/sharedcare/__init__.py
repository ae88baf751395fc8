"""sharedcare: joined-up health and care information over one FHIR R4 store."""

__version__ = "0.1.0"
