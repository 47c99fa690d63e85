"""Data sets: loaders for digits, CIFAR-10/100, MNIST, Imagenette and SAT-6 from local files
(numpy only; scikit-learn lazily for digits), and the published tables (paper_tables.json)."""
