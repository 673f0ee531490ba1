"""The simulated apps: users who ask for feeds over gRPC and engage (or not) later.

It plays the part of real apps in the closed loop: Rank requests at simulated time,
the world's behaviour model turning each feed into delayed rewards, and those rewards
produced to Kafka when their simulated time comes.
"""
