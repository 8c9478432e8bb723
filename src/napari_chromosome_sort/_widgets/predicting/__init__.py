"""The parts of the Predict dock: the model choice, the calls layers (classes, Grad-CAM, class
names), the folder run and its results, and the Review least sure section."""
