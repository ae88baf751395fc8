"""FHIR search: parsing queries and extracting index values from resources."""
