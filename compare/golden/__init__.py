"""Real-Caffe golden fixtures: generator (make_golden.py, runs under pycaffe), reader (golden.py), seeded.py."""
