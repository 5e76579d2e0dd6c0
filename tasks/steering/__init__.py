"""Steering: a camera frame to a steering angle, end to end (PilotNet); see task.py."""
