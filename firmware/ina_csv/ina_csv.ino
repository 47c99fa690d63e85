// e2train-ina: streams board power from an INA219 or INA226 as CSV lines (docs/meters.md).
//
//   # e2train-ina 1 sensor=INA226 interval_ms=10 shunt_mohm=100
//   n,t_ms,mV,mA
//   0,1234,5012,412.5
//
// Wiring: the sensor's VIN+/VIN- in series with the board's supply (high side), VBUS to the
// board side, SDA/SCL to the Arduino's I2C pins, GND common. Host: `e2train measure --meter
// csv:/dev/ttyACM0 ...`. No library beyond Wire: the registers are read directly, so the same
// sketch serves both chips (told apart by the INA226's manufacturer id register).
//
// Throughput: a line is about 24 bytes; at 115200 baud that is ~480 lines/s at most, so keep
// INTERVAL_MS >= 10 on a USB-serial bridge, or use a board with native USB (Leonardo, Pro Micro,
// RP2040, SAMD), where the baud rate is nominal, for 1 ms.

#include <Wire.h>

const uint8_t  I2C_ADDR    = 0x40;   // A0/A1 to GND
const uint16_t SHUNT_MOHM  = 100;    // the shunt on most breakout boards (R100)
const uint16_t INTERVAL_MS = 10;
const long     BAUD        = 115200;

const uint8_t REG_CONFIG = 0x00, REG_SHUNT = 0x01, REG_BUS = 0x02, REG_MANUF = 0xFE;

bool is226 = false;
bool sensorOk = false;
uint32_t n = 0;
uint32_t nextMs = 0;

bool writeReg(uint8_t reg, uint16_t v) {
  Wire.beginTransmission(I2C_ADDR);
  Wire.write(reg);
  Wire.write(v >> 8);
  Wire.write(v & 0xFF);
  return Wire.endTransmission() == 0;
}

bool readReg(uint8_t reg, uint16_t &v) {
  Wire.beginTransmission(I2C_ADDR);
  Wire.write(reg);
  if (Wire.endTransmission(false) != 0) return false;
  if (Wire.requestFrom(I2C_ADDR, (uint8_t)2) != 2) return false;
  v = ((uint16_t)Wire.read() << 8) | Wire.read();
  return true;
}

void banner() {
  if (!sensorOk) {
    Serial.print(F("#error no INA219/INA226 answers at I2C address 0x"));
    Serial.println(I2C_ADDR, HEX);
    return;
  }
  Serial.print(F("# e2train-ina 1 sensor="));
  Serial.print(is226 ? F("INA226") : F("INA219"));
  Serial.print(F(" interval_ms="));
  Serial.print(INTERVAL_MS);
  Serial.print(F(" shunt_mohm="));
  Serial.println(SHUNT_MOHM);
  Serial.println(F("n,t_ms,mV,mA"));
}

void setupSensor() {
  uint16_t id = 0;
  is226 = readReg(REG_MANUF, id) && id == 0x5449;   // "TI": only the INA226 has this register
  // INA226: 588 us bus and shunt conversions, no averaging, continuous.
  // INA219: 32 V range, +-320 mV shunt range, 12-bit, continuous (its reset default).
  sensorOk = writeReg(REG_CONFIG, is226 ? 0x40DF : 0x399F);
}

void setup() {
  Serial.begin(BAUD);
  Wire.begin();
  Wire.setClock(400000);
  setupSensor();
  banner();
  nextMs = millis();
}

void loop() {
  // '?' + LF from the host: say who we are again (boards with native USB do not reset on open).
  while (Serial.available()) {
    if (Serial.read() == '?') banner();
  }
  if (!sensorOk) { delay(1000); setupSensor(); if (sensorOk) banner(); return; }
  uint32_t now = millis();
  if ((int32_t)(now - nextMs) < 0) return;
  nextMs += INTERVAL_MS;
  uint16_t rawBus, rawShunt;
  if (!readReg(REG_BUS, rawBus) || !readReg(REG_SHUNT, rawShunt)) {
    // A comment, not #error: the host keeps recording and shows the missing samples as a gap.
    Serial.println(F("# I2C read failed, re-initialising the sensor"));
    sensorOk = false;
    return;
  }
  // Bus voltage: INA226 1.25 mV/LSB; INA219 4 mV/LSB in bits 15..3.
  long mV = is226 ? ((long)rawBus * 125) / 100 : (long)(rawBus >> 3) * 4;
  // Shunt voltage (signed): INA226 2.5 uV/LSB, INA219 10 uV/LSB; uV / mOhm = mA.
  float uV = (float)(int16_t)rawShunt * (is226 ? 2.5f : 10.0f);
  float mA = uV / SHUNT_MOHM;
  Serial.print(n++);
  Serial.print(',');
  Serial.print(now);
  Serial.print(',');
  Serial.print(mV);
  Serial.print(',');
  Serial.println(mA, 1);
}
