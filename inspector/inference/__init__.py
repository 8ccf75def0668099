"""The one inference path: the predictor, postprocessing into verdicts and regions, drift."""
