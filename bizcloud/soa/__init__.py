"""SOA registry on ZooKeeper in Apache Dubbo's layout, and the Python consumer SDK."""
