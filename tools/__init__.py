"""Instructor tooling: reference assets, the student release and the autograder."""
