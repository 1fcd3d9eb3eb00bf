"""The autograder of hw2 Part 4, one step per module.

``collect`` takes submissions in (directories and zips, allow-listed files only); ``sandbox``
runs the trusted ``harness`` on them in bubblewrap, one long-lived worker per slot;
``compare`` grades what the sandbox returned against the reference tensors; ``student`` grades one
student (the one function every backend calls); ``runner`` drives a batch on this machine;
``report`` and ``feedback`` write the class report and each student's page.

This package is copied into the sandbox (only ``harness`` runs there), so this file imports
nothing.
"""
