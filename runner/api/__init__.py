"""Python entry points that span the layers: a job's trained model read back from the database
(`runner.load_model`) and loss landscapes of finished jobs (`runner.connectivity`, `runner.trajectory`,
`runner.loss_slice`). May import every part but cli; nothing imports api but cli and `runner`'s
lazy attributes."""
