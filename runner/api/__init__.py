"""Python entry points that span the layers: a job's trained model read back from the database
(`runner.load_model`). May import every part but cli; nothing imports api but cli and `runner`'s
lazy attributes."""
