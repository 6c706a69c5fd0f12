"""Preparing a training folder the way the seed models' datasets were made: tag the images with a
WD14-style ONNX tagger, rewrite captions in a profile's training order (with quality / rating / year
tags from the posts' metadata), score them with an aesthetic model so training can skip the weak
ones, and inspect the result before training. Pure core: no ComfyUI imports; `animekit dataset`
(cli.py) and nodes/datasets/ drive it."""
