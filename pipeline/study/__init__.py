"""What runs the study: the command behind `make study`, the fan-out over Ray, the DVC graph, the
stages' command line and item protocol, the report's MLflow run, Hydra composition. The library
(everything else under pipeline/) never imports from here."""
