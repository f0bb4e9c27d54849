"""The model families, one folder each: everything a family is, in its folder.

The library finds these folders by walking this package (:mod:`prunesid.family_kit.discovery`)
and never imports one by name. What the folders share, the adapter base, processors,
built-in registry and declarations, is :mod:`prunesid.family_kit`.
"""
