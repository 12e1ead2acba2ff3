"""Streaming calibration statistics of layer inputs."""
