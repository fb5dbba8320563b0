"""Training and evaluation of your own classifiers (build time: needs TensorFlow; the function
never imports this package, it only serves the model directories it writes)."""
