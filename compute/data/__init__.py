"""Versioned factor tables, class defaults and cycle traces of the emission model."""
