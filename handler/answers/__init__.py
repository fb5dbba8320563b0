"""Answers: what every door returns for a recognized image, whatever door it came through.

``answering`` builds the answers (ranked classes, ``uncertain``, the ``prediction_id``);
``capture`` samples images with their answers into S3 and takes feedback on them; ``drift`` and
``signals`` are the model-health and rollout metrics the answers feed.
"""
