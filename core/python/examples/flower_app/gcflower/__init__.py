"""gcflower: a Flower app that trains on Fashion-MNIST with gradcodec on the uplink."""
