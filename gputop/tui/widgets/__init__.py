"""Widgets, one module per widget family. Each renders what it is given; none fetches."""
