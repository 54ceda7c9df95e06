"""The FastAPI service (routes, schemas, codecs, settings). Built in the API issue; grasp math stays in ``models``."""
