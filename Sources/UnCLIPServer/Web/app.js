// UnCLIP gallery (placeholder until the gallery lands).
