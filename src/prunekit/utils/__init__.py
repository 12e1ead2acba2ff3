"""Small shared helpers: paths, atomic writes, progress, hook handles."""
