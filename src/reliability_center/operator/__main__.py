from reliability_center.operator.main import run

run()
