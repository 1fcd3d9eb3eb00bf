"""Helpers shipped to students with hw2: answers display, plots, results and data loading."""
